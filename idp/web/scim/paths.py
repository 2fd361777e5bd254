"""Where SCIM is mounted; shared by the blueprint (``idp.web.scim``) and its views."""

PREFIX = "/scim/v2"
