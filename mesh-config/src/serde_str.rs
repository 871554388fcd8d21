//! Types that are written as one string in TOML (endpoints, prefix filters, keys) are
//! serialised with `Display` and deserialised with `FromStr`, so the config file, the
//! command line and error messages all use the same syntax.

/// Implements `Serialize` via `Display` and `Deserialize` via `FromStr` for `$ty`.
/// `$what` completes "invalid type: ..., expected $what" in serde's messages.
macro_rules! serde_via_str {
    ($ty:ty, $what:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct StrVisitor;
                impl serde::de::Visitor<'_> for StrVisitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        s.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(StrVisitor)
            }
        }
    };
}

pub(crate) use serde_via_str;
