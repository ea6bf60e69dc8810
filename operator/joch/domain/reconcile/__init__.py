"""What the operator's services decide, as pure functions of the shared cache.

- :mod:`.cache`: the shared cache (every watched object parsed once, by kind and key; the compiler's
  Lookup; what makes a change matter: ``Entry.fingerprint``);
- :mod:`.fanout`: which Agents a change affects (the reverse index of what each compile consulted, and
  the label-driven rules for what an Agent does not depend on yet);
- :mod:`.status`: the status an Agent's compile and every referenced object should report.

The services (joch.controllers) gather from the cache, call these, and write the result through
joch.kube; nothing here talks to the API server or the event loop.
"""
