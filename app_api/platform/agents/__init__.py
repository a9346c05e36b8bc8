"""Liaison stations and village agents (代办点): stations, agents, mandates, batch submissions.

Village and liaison-station agents apply for residents who cannot (villagers, migrant workers at the
stations in 常熟, 南通, 南京江宁, 义乌, 平湖), with the resident's recorded consent: a mandate given by
an SMS code sent to the resident's own phone, or by the agent's attested in-person check. An agent
acts for a resident only while a mandate is valid and only within its scope; every action records
the agent and the station.
"""
