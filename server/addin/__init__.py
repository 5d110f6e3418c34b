"""The Outlook add-in: manifests, rendered per deployment for admins to install."""
