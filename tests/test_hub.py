"""A machine that cannot reach the Hugging Face hub (an air-gapped cluster) without HF_HUB_OFFLINE set: every hub id
probe loads (generator, classifier, concept model) reads the local cache at once or fails with one line, instead of
waiting through huggingface_hub's five retries (about 23 s per model, each retry logged)."""

from __future__ import annotations

import logging
import socket
import time
import types

import pytest

from test_classifiers import _cached_repo


@pytest.fixture()
def unreachable_hub(monkeypatch):
    """The hub's endpoint is a local port nothing listens on (a connection is refused at once), HF_HUB_OFFLINE is
    unset, and huggingface_hub's retry sleeps are recorded instead of slept: the list of them is returned."""
    import huggingface_hub.constants as constants
    import huggingface_hub.utils._http as http

    from probe import hub

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    sleeps: list = []
    clock = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    clock.sleep = sleeps.append
    monkeypatch.setattr(http, "time", clock)
    hub.forget_answers()
    yield sleeps
    hub.forget_answers()
    closed.close()


def test_hub_ids_fail_at_once_with_one_line_when_the_hub_is_unreachable(unreachable_hub, caplog, tmp_path,
                                                                          monkeypatch):
    import huggingface_hub.constants as constants

    from probe.classifiers import load_classifier
    from probe.concepts import ConceptError, load_concepts
    from probe.errors import ClassifierError, GeneratorError
    from probe.generators import load_generator

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # nothing cached
    caplog.set_level(logging.WARNING)
    for load, error, spec in ((load_concepts, ConceptError, "probe-tests/no-clip"),
                              (load_generator, GeneratorError, "probe-tests/no-pipeline"),
                              (load_classifier, ClassifierError, "probe-tests/no-classifier")):
        with pytest.raises(error) as e:
            load(spec)
        message = str(e.value)
        assert "\n" not in message and f"{constants.ENDPOINT}) is unreachable" in message, message
        assert f"hf download {spec}" in message, message
    assert unreachable_hub == []  # no retry waited for
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]


def _tiny_resnet(folder):
    import timm
    from timm.models import save_for_hf

    save_for_hf(timm.create_model("resnet18", num_classes=2).eval(), folder,
                model_config={"label_names": ["ok", "defect"]}, safe_serialization=True)


@pytest.mark.parametrize("kind", ["concepts", "generator", "classifier"])
def test_a_cached_model_loads_without_waiting_for_an_unreachable_hub(unreachable_hub, tmp_path, monkeypatch, kind):
    """What was downloaded once loads from the cache: before, each load waited through the retries first (and
    transformers' adapter lookup asked the hub even with local_files_only)."""
    import huggingface_hub.constants as constants

    from tiny_concepts import save_tiny_clip
    from tiny_sd import build_tiny_sd

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = f"probe-tests/tiny-{kind}"
    build = {"concepts": save_tiny_clip, "generator": build_tiny_sd, "classifier": _tiny_resnet}[kind]
    _cached_repo(tmp_path / "hub", spec, build)
    if kind == "concepts":
        from probe.concepts import load_concepts

        assert load_concepts(spec).name == spec
    elif kind == "generator":
        from probe.generators import load_generator

        assert load_generator(spec).source == spec
    else:
        from probe.classifiers import load_classifier

        assert load_classifier(spec).labels == ["ok", "defect"]
    assert unreachable_hub == []


def test_a_hub_that_answers_is_asked_and_an_answer_holds_for_a_while(monkeypatch):
    """Any HTTP answer, an error status included, means the hub can be asked (and say what it has). One answer holds
    for ASK_AGAIN_S: a process loading three models asks once, a notebook whose network comes back asks again."""
    import huggingface_hub.constants as constants

    from probe import hub

    asked = []

    class Answering:
        def head(self, url, timeout):
            asked.append(url)
            return types.SimpleNamespace(status_code=503)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.utils.get_session", lambda: Answering())
    hub.forget_answers()
    try:
        assert hub.hub_unavailable() is None and hub.hub_unavailable() is None and len(asked) == 1
        monkeypatch.setattr(hub, "ASK_AGAIN_S", 0.0)
        assert hub.hub_unavailable() is None and len(asked) == 2
    finally:
        hub.forget_answers()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_unavailable() == hub.OFF and len(asked) == 2
