"""Outbound SCIM 2.0 provisioning (RFC 7644) to downstream applications: targets
(``targets``), the payloads (``payload``, from ``idp.scim.mapping``), the SCIM calls through the
outbound guard (``client``) and the pusher that drains the queue (``worker``). The queue is
filled by one hook in the storage layer, ``idp.storage.provisioning``."""
