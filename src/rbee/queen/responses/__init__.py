"""The Responses API, served by translating to chat completions.

A Responses request becomes a chat-completions request (`inputs`), which goes through the
same admission, dispatch, failover and relay as `/v1/chat/completions` (`answer`); the
worker's chat answer or chunks become a Response object or the Responses event stream
(`outputs`, `events`). Stored responses (`storage.responses`) carry a conversation on
through `previous_response_id`. Imports only rbee.api, rbee.core, rbee.storage and the
queen's own modules.
"""
