"""Review: replies read back from mailboxes, trailers and comments per patch, and their use.

``mailbox`` reads mbox files, maildirs and single saved messages; ``message`` decodes
one mail (headers, text body); ``trailers`` and ``comments`` read what a reply says;
``thread`` matches replies to the sent series through the send journal and keeps
them in the cache; ``carry`` writes collected trailers into patch files.
"""
