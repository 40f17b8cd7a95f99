// only a comment here
