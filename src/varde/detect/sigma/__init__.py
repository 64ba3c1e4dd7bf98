"""Sigma rules compiled to SQL and run on the case store.

``rules`` loads SigmaHQ-format folders, ``logsource`` says where a rule's events are,
``compile`` turns a rule into a SQL predicate, ``engine`` runs predicates over groups of events,
and ``correlation`` evaluates correlation rules over the matches.
"""
