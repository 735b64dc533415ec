"""mDNS/DNS-SD: the box's adverts on the LAN and the technician's `clinicbox discover`."""

from appliance.discovery.advert import SERVICE_TYPE, Advertiser, advert_txt
from appliance.discovery.browse import FoundBox, browse

__all__ = ["SERVICE_TYPE", "Advertiser", "FoundBox", "advert_txt", "browse"]
