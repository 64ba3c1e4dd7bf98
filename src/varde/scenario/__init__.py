"""The scenario simulator: realistic Exchange server evidence with its ground truth.

Never imported by the hunting pipeline. ``engine`` drives the simulated clock hour by hour,
``formats`` writes each evidence kind exactly as the server writes it, ``http`` fans one HTTP
request out to every log that records it, ``background`` is a working organisation, ``steps``
are the intruders' actions, ``library`` loads the declarative scenarios in ``scenarios/`` and
``truth`` collects what a hunt must find (``DIR/truth.json``).
"""
