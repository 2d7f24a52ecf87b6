"""The Slack adapter: bolt listeners (app.py), Block Kit rendering (render.py), dedup and
lookups (state.py), and the HTTP (http.py) and Socket Mode (socket.py) runners."""
