"""Microsoft Teams adapter: the answer service in Teams, through the Bot Framework protocol.

Layout (only ``botframework.py`` imports botbuilder, so moving to the SDK's successor,
``microsoft-agents-hosting-aiohttp``, is a change to that one module):

* ``protocol.py``     the small interface: ChannelGateway, TurnIO, InvokeReply, errors
* ``botframework.py`` ChannelGateway on botbuilder's CloudAdapter (auth, turns, proactive)
* ``http.py``         ``teams_router(services)``: POST /api/messages for the FastAPI app
* ``handler.py``      parse → the conversation core (``bot/conversation.py``) → render:
                      questions, votes, reactions, ``ingest`` for admins
* ``delivery.py``     an answer shown while it is written (streaming or updates), then the card
* ``notify.py``       the worker's Notifier: ingest progress and results, proactively
* ``activity.py``     incoming wire activity → typed facts (pure)
* ``render.py``       Answer → Adaptive Card and reply activities (pure)
* ``memory.py``       bounded recent turns and reply → answer map
* ``app_package.py``  the Teams app package (manifest template + icons in package/ → zip)
"""
