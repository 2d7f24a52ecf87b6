"""The Slack adapter, shaped like bolt apps: the App and SlackOptions (app.py), payloads parsed
once (inbound.py), listeners per concern (messages.py, feedback.py, commands.py, verified.py),
answer delivery and streaming (delivery.py), Block Kit (render.py), dedup and look-ups
(state.py), the worker's Notifier (notify.py), and the HTTP (http.py) and Socket Mode
(socket.py) runners. The conversation itself is bot/conversation.py."""
