"""Load testing: the traffic profile builder (``load.profile``) and the bench (``load.bench``)."""
