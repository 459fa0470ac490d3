"""The audit loop: from the selected classes to tokens, their evaluation and the run directory, then the analysis.

==================  ===========================================================================================
module              what it holds
==================  ===========================================================================================
``config``          :class:`AuditConfig`: every setting of one audit, typed; saved as config.json
``scale``           :class:`ScaleConfig`: where the classes run (``--backend``, ``--shard``); loads no backend
``loop``            :func:`audit`: preflight, the run directory, resume, the backend over the classes, then the
                    analysis, the report and the gate; :class:`AuditResult`
``class_run``       :func:`run_class`: one class, whoever runs it (load the models, learn the token, evaluate it,
                    write the class folder)
``backends``        the backend registry: ``local`` (this process) and ``ray`` (Ray actors, one per device)
==================  ===========================================================================================

The public names are ``probe.audit``, ``probe.AuditConfig`` and ``probe.AuditResult``. This package is named
``auditing``, not ``audit``, so that importing it never replaces the function ``probe.audit`` as an attribute
of ``probe``. Nothing is imported here: ``probe.auditing.scale`` and ``probe.auditing.config`` stay light.
"""
