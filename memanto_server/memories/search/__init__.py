"""How recall finds memories: the query grammar, the ranking of every signal at once, and
the cursors of its pages."""
