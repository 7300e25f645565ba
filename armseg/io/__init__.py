"""Reading and writing what users have: images, the OpenArm tree, label values."""
