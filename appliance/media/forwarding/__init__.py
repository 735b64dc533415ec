"""Video forwarding by RTP packet: header rewrite per slot, packet caches, the forwarder.

A publisher's video packets, as they leave SRTP decryption, go to every slot showing that
publisher with SSRC, sequence number, timestamp and VP8 picture id rewritten into the slot's
own continuous numbering, and straight to the subscriber's SRTP and socket (docs/media.md).
"""
