"""Issue trackers as channels: Forgejo/Gitea and GitHub issues become tasks, replies go back as comments."""
