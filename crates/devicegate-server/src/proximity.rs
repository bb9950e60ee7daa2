//! Is the person approving near the device? The device's address (from its device
//! authorization request) against the approver's: the same address, the same network (a /24
//! of IPv4, a /56 of IPv6, as one household or office usually holds), or elsewhere. A
//! phished approval usually comes from elsewhere (RFC 10027 §6.1.11, proximity checks).

use std::net::IpAddr;
use std::path::Path;

use devicegate_proto::Place;
use maxminddb::geoip2;
use serde::Serialize;

use crate::StartError;

/// The operator's MaxMind-format database (GeoIP2 or GeoLite2, City or Country), read into
/// memory at start; none unless configured.
pub struct GeoIp(Option<maxminddb::Reader<Vec<u8>>>);

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = self.0.as_ref().map(|r| r.metadata().database_type.clone());
        f.debug_tuple("GeoIp").field(&kind).finish()
    }
}

impl GeoIp {
    pub fn open(path: Option<&Path>) -> Result<GeoIp, StartError> {
        let Some(path) = path else {
            return Ok(GeoIp(None));
        };
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| StartError::GeoIp(format!("{}: {e}", path.display())))?;
        tracing::info!(
            database = %reader.metadata().database_type,
            built = reader.metadata().build_epoch,
            "GeoIP database loaded"
        );
        Ok(GeoIp(Some(reader)))
    }

    /// Where `ip` is, with names in `lang` (English where the database has none in it).
    /// `None` without a database, for addresses it does not know, and on a damaged record.
    pub fn locate(&self, ip: IpAddr, lang: &str) -> Option<Place> {
        let reader = self.0.as_ref()?;
        let found = reader.lookup(ip.to_canonical()).ok()?;
        let city: geoip2::City = match found.decode() {
            Ok(Some(c)) => c,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "GeoIP record could not be read");
                return None;
            }
        };
        let place = Place {
            country_code: city.country.iso_code.map(str::to_owned),
            country: name_in(&city.country.names, lang),
            city: name_in(&city.city.names, lang),
        };
        (place != Place::default()).then_some(place)
    }
}

/// A GeoIP name in `lang`, else in English.
fn name_in(names: &geoip2::Names, lang: &str) -> Option<String> {
    let own = match lang.split('-').next().unwrap_or(lang) {
        "de" => names.german,
        "es" => names.spanish,
        "fr" => names.french,
        "ja" => names.japanese,
        "pt" => names.brazilian_portuguese,
        "ru" => names.russian,
        "zh" => names.simplified_chinese,
        _ => None,
    };
    own.or(names.english).map(str::to_owned)
}

/// Where the approver is, seen from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    SameAddress,
    SameNetwork,
    Elsewhere,
    /// The device's address is not known (a grant from before addresses were kept).
    Unknown,
}

impl Relation {
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::SameAddress => "same_address",
            Relation::SameNetwork => "same_network",
            Relation::Elsewhere => "elsewhere",
            Relation::Unknown => "unknown",
        }
    }
}

/// The network an address belongs to for this comparison.
fn network(ip: IpAddr) -> Option<ipnet::IpNet> {
    let ip = ip.to_canonical();
    let prefix = if ip.is_ipv4() { 24 } else { 56 };
    ipnet::IpNet::new(ip, prefix).ok().map(|n| n.trunc())
}

/// The approver at `approver`, seen from a device that asked from `device`.
pub fn relate(device: Option<&str>, approver: IpAddr) -> Relation {
    let Some(device) = device.and_then(|d| d.parse::<IpAddr>().ok()) else {
        return Relation::Unknown;
    };
    let (device, approver) = (device.to_canonical(), approver.to_canonical());
    if device == approver {
        Relation::SameAddress
    } else if network(device).is_some_and(|n| n.contains(&approver)) {
        Relation::SameNetwork
    } else {
        Relation::Elsewhere
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_address_same_network_or_elsewhere() {
        let at = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            relate(Some("192.0.2.7"), at("192.0.2.7")),
            Relation::SameAddress
        );
        assert_eq!(
            relate(Some("192.0.2.7"), at("::ffff:192.0.2.7")),
            Relation::SameAddress
        );
        assert_eq!(
            relate(Some("192.0.2.7"), at("192.0.2.200")),
            Relation::SameNetwork
        );
        assert_eq!(
            relate(Some("192.0.2.7"), at("192.0.3.7")),
            Relation::Elsewhere
        );
        assert_eq!(
            relate(Some("2001:db8:1:2::1"), at("2001:db8:1:2f::9")),
            Relation::SameNetwork
        );
        assert_eq!(
            relate(Some("2001:db8:1:2::1"), at("2001:db8:1:100::1")),
            Relation::Elsewhere
        );
        assert_eq!(relate(None, at("192.0.2.7")), Relation::Unknown);
        assert_eq!(relate(Some("garbage"), at("192.0.2.7")), Relation::Unknown);
    }
}
