"""Serving: wires every layer below into a running process.

``asgi`` builds the ASGI application around one :class:`~adapter.app.context.AppContext`,
``server`` runs it under TLS with delegated auth, ``tls`` makes a self-signed certificate,
``reload`` watches the rules file. This is the top layer: it may import every other package of
:mod:`adapter`; nothing but :mod:`adapter.cli` imports it.
"""
