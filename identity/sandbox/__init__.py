"""Development-only protocol sandboxes of identity (not shipped in the wheel).

``realperson``: the licensed real-person service that :mod:`identity.face.remote` calls; the
component's lazy sandbox builder mounts it at ``/sandbox/realperson`` in development.
"""
