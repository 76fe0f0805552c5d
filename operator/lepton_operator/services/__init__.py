"""What handlers call: the GPU admission queue and the watch-fed view it decides on."""
