"""Getting plugins onto disk: sources, archives, builds, and the atomic move into ``plugins/``.

* :mod:`.installer` — ``install``, ``remove`` and the installation metadata
  (``.installed.json``); the one module the facade calls.
* :mod:`._sources` — parse a source (directory, archive, URL, git) and acquire it into staging;
  :mod:`._archive` — the safe ``.tar.gz`` extraction it uses.
* :mod:`._build`, :mod:`._cargo`, :mod:`._componentize` — ``--build``: the build environment
  (no ``VULTRINO_*`` variable reaches a build), Cargo builds of Rust plugins, componentize-py
  builds of Python plugins; :mod:`._cargo_paths` makes a crate's build copy stand alone
  (vendored ``path`` dependencies, its own workspace).
* :mod:`.scaffold` — ``vultrino plugin new``: a new plugin directory from the SDK template.

Importing this package imports none of them: ``vultrino plugin new`` needs only the scaffold.
"""
