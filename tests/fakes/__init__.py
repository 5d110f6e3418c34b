"""Fakes of services that cannot run here (Microsoft Graph, EWS), built from their documented shapes."""
