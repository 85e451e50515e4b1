//! Every member of a serde model, by JSON path (`containerDefinitions[].linuxParameters.maxSwap`),
//! read from the model's own `Deserialize` impls, so a list of members cannot drift from it.
//!
//! A tracing `Deserializer` answers each `deserialize_struct` by recording the field names
//! serde passes it (already renamed: `sizeInGiB`, `type`) and then feeding every field back
//! to the visitor, descending into options, lists and nested structs. It is the technique of
//! the `serde-reflection` crate, which cannot be used here: it refuses `deserialize_any`,
//! which the model's `SizeValue` and `serde_json::Value` members call. Here `deserialize_any`
//! answers with a string, which both accept. Maps (`dockerLabels`, `options`) are leaves:
//! their keys are data, not members.

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use std::cell::RefCell;

type Error = de::value::Error;

/// The JSON paths of every member of `T`, in declaration order; list elements are `[]`.
/// Panics if `T`'s `Deserialize` impl asks for something the tracer cannot answer: a
/// model change that needs a look here.
pub fn paths<T: DeserializeOwned>() -> Vec<String> {
    let out = RefCell::new(Vec::new());
    T::deserialize(Tracer {
        out: &out,
        path: String::new(),
        depth: 0,
    })
    .unwrap_or_else(|e| panic!("failed to trace {}: {e}", std::any::type_name::<T>()));
    out.into_inner()
}

/// Deeper than any ECS shape; a guard against a recursive type.
const MAX_DEPTH: usize = 24;

struct Tracer<'a> {
    out: &'a RefCell<Vec<String>>,
    path: String,
    depth: usize,
}

impl<'a> Tracer<'a> {
    fn child(&self, path: String) -> Result<Tracer<'a>, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "{path}: too deep (recursive type?)"
            )));
        }
        Ok(Tracer {
            out: self.out,
            path,
            depth: self.depth + 1,
        })
    }
}

macro_rules! answer {
    ($($method:ident => $visit:ident($($value:expr)?);)*) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            v.$visit($($value)?)
        })*
    };
}

impl<'de, 'a> de::Deserializer<'de> for Tracer<'a> {
    type Error = Error;

    answer! {
        deserialize_any => visit_str("0");
        deserialize_bool => visit_bool(false);
        deserialize_i8 => visit_i8(0);
        deserialize_i16 => visit_i16(0);
        deserialize_i32 => visit_i32(0);
        deserialize_i64 => visit_i64(0);
        deserialize_u8 => visit_u8(0);
        deserialize_u16 => visit_u16(0);
        deserialize_u32 => visit_u32(0);
        deserialize_u64 => visit_u64(0);
        deserialize_f32 => visit_f32(0.0);
        deserialize_f64 => visit_f64(0.0);
        deserialize_char => visit_char('0');
        deserialize_str => visit_str("");
        deserialize_string => visit_str("");
        deserialize_bytes => visit_bytes(&[]);
        deserialize_byte_buf => visit_bytes(&[]);
        deserialize_unit => visit_unit();
        deserialize_identifier => visit_str("");
        deserialize_ignored_any => visit_unit();
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let element = self.child(format!("{}[]", self.path))?;
        v.visit_seq(One(Some(element)))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_map(de::value::MapDeserializer::new(
            std::iter::empty::<((), ())>(),
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let mut members = Vec::new();
        for f in fields {
            let path = if self.path.is_empty() {
                (*f).to_string()
            } else {
                format!("{}.{f}", self.path)
            };
            self.out.borrow_mut().push(path.clone());
            members.push((*f, self.child(path)?));
        }
        v.visit_map(Fields(members.into_iter(), None))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let first = variants
            .first()
            .ok_or_else(|| de::Error::custom(format!("{}: an enum without variants", self.path)))?;
        v.visit_enum((*first).into_deserializer())
    }
}

/// A list of one element.
struct One<'a>(Option<Tracer<'a>>);

impl<'de> de::SeqAccess<'de> for One<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|t| seed.deserialize(t)).transpose()
    }
}

/// A struct's members, each with a tracer at its path.
struct Fields<'a>(
    std::vec::IntoIter<(&'static str, Tracer<'a>)>,
    Option<Tracer<'a>>,
);

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((name, tracer)) = self.0.next() else {
            return Ok(None);
        };
        self.1 = Some(tracer);
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let tracer = self
            .1
            .take()
            .ok_or_else(|| de::Error::custom("a value asked for before its key"))?;
        seed.deserialize(tracer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_nested_renamed_and_custom_members() {
        let p = paths::<crate::taskdef::TaskDefinition>();
        for want in [
            "family",
            "cpu",
            "registeredAt",
            "containerDefinitions[].linuxParameters.maxSwap",
            "containerDefinitions[].portMappings[].protocol",
            "containerDefinitions[].environmentFiles[].type",
            "containerDefinitions[].dockerLabels",
            "ephemeralStorage.sizeInGiB",
            "volumes[].efsVolumeConfiguration.authorizationConfig.iam",
            "tags[].key",
        ] {
            assert!(p.iter().any(|x| x == want), "missing {want} in {p:#?}");
        }
        // Map keys are data, not members.
        assert!(
            !p.iter()
                .any(|x| x.starts_with("containerDefinitions[].dockerLabels."))
        );
        let unique: std::collections::BTreeSet<_> = p.iter().collect();
        assert_eq!(unique.len(), p.len(), "a path twice");
    }
}
