"""Tests of the Outlook add-in: manifests and icons."""
