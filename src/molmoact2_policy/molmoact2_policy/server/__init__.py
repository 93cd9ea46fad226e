"""The ``/act`` HTTP protocol of the allenai/molmoact2 FastAPI servers: codecs, a server over any
local backend (``molmoact2-act-server``) and the client used by the ``remote`` backend."""
