"""SCIM 2.0 (RFC 7643 / RFC 7644) without a web framework: the resources this server serves
(``models``), filters as SQL (``filters``), users and groups as resources and back
(``mapping``), the operations on a management context (``service``), discovery
(``discovery``) and errors (``errors``). ``idp.web.scim`` puts it on HTTP at ``/scim/v2``."""
