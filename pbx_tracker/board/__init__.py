"""The live board: what a supervisor sees of the floor now and of the day so far.

`floor` reads the managers' live states (the same `ManagerBoard` the router
asks) and the calls going on (the correlator's `live_calls`); `today` adds up
the day from the database; `feed` puts both into one JSON document, builds it
once per change however many boards are open, and hands it to each open board
(`pbx_tracker.web.pages.board` streams it as Server-Sent Events).
"""
