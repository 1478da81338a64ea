"""Downloading links safely: yt-dlp behind the link guard."""
