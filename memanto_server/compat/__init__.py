"""Routes that other clients already speak, mapped onto the same services as the REST API.

- `health`: `GET /health`, `/ready`, `/live` with the fields of MEMANTO's bundled server;
- `moorcheh`: the part of the Moorcheh v1 API that the published `memanto` package calls,
  under `/moorcheh/v1`, so its CLI and SDK store their memories in this server.
"""
