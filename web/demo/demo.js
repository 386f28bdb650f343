// shared code of the demo pages
