"""The U-Net and its losses."""
