"""The page's parts. Each module ``render()``s its components (returning a small dataclass of
them) and ``listen()``s: wires its events to the module-level handlers of ``app.handlers``.
``app.layout`` places them and hands every ``listen`` the whole ``UI``."""
