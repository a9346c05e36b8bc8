"""Loopback stand-ins for the billers (development, tests and benchmarks; never in the wheel).

:mod:`.biller` speaks the ``http_json`` protocol as one company does; :mod:`.demo` holds the
development billers with the seed's households. Only the column's dev-sandbox factory imports this
package at run time.
"""
