"""Development-only stand-ins for the data center's protocols (left out of the built wheel).

``exchange``: the city data exchange platform, served at ``/sandbox/datahub`` (``serve``: as a process
of its own); ``library``: its e-certificate library.
"""
