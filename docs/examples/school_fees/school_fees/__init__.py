"""学费缴纳: an example third-party column of the 我家亳州 open platform, run as its own process.

It uses only public libraries and the platform's published interface; see README.md.
"""
