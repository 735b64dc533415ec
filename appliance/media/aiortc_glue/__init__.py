"""The one place the box reaches past aiortc's and aioice's public API.

aiortc 1.16.0 and aioice 0.13.0 are pinned exactly because of what is here;
`tests/media/test_aiortc_seams.py` fails loudly when an upgrade moves any of it, and
`tests/media/test_aiortc_boundary.py` fails when code outside this package reaches a private
part itself. Everything else calls these names:
- `seams`: module-level replacements, installed once: forwarding receivers (encoded frames
  instead of decoded ones, our jitter buffers), VP8 packing with a payload limit, which host
  addresses ICE offers (`install_forwarding`, `restrict_host_addresses`);
- `consent`: ICE consent checks that survive a long round trip (`install`);
- `rtp`: per sender and receiver: tap RTCP (`tap_rtcp`), watch sender reports
  (`watch_sender_reports`), route keyframe requests (`route_keyframes`), read sender SSRCs
  (`sender_ssrc`, `sender_ssrcs`) and a publisher's RTX SSRCs (`retransmission_ssrcs`),
  request a PLI (`request_pli`), read a packet's depacketized payload (`rtp_payload`);
- `transport`: wrap the transport's send (`wrap_transport_send`, `unwrap_transport_send`),
  count datagrams received (`datagrams_received`), read the nominated ICE pair
  (`nominated_pair`).
"""
