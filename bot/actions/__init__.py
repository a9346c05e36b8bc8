"""The assistant's custom actions, served by the app itself (Rasa's action-server protocol).

Rasa POSTs ``{next_action, sender_id, tracker, domain, version}``; an action answers
``{"events": [...], "responses": [...]}`` or rejects with :class:`~bot.actions.call.Rejected`
(HTTP 400 ``{"action_name", "error"}``), which lets Rasa's policies pick another action (form
validation).

Everything a resident is told comes from the live catalogue and records (:mod:`bot.sources`).
The resident behind a conversation is taken from the message metadata the chat endpoint attached,
and only after checking it against the sender id (an HMAC of the account id): a conversation can
never read another account's records.

- :mod:`~bot.actions.protocol`: the payload types of the protocol;
- :mod:`~bot.actions.call`: one action call (reading the tracker, answering);
- :mod:`~bot.actions.dispatch`: the action table and :func:`~bot.actions.dispatch.run_action`;
- :mod:`~bot.actions.resolve`: what the resident called an item → one catalogue item;
- :mod:`~bot.actions.guide`: answers about one item (materials, fee, time limit, where, ...);
- :mod:`~bot.actions.items`: the item question and application forms;
- :mod:`~bot.actions.needs`: which items fit a need told in a sentence;
- :mod:`~bot.actions.records`: the resident's own records (applications, bills) and stations;
- :mod:`~bot.actions.conversation`: session start and the hand-off after repeated failures.
"""
