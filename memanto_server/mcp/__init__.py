"""The MCP endpoint: the tools of the published MEMANTO MCP server, calling the same services as REST.

- `endpoint`: `/mcp` in the app, on the owner's API key (the SDK loaded at the first request);
- `server`: the SDK's session manager and low-level server, Streamable HTTP (stateless, JSON);
- `tools`: the tools, their arguments (the REST request Structs) and what each calls;
- `arguments`: input schemas and argument checking from those Structs;
- `stdio`: `memanto mcp`, the same tools over stdio for desktop clients, forwarded to a server.
"""
