"""A loopback provident-fund center (development and tests; never in the wheel).

:mod:`.center` speaks the center's protocol; :mod:`.demo` holds the development center with the demo
residents' accounts. Only the column's dev-sandbox factory imports this package at run time.
"""
