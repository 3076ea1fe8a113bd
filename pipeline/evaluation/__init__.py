"""Built-in evaluation of a rendered talking video: measures computed from its frames and its sound track."""
