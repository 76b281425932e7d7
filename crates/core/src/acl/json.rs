//! The JSON form of ACL rules, read into the same [`Node`] tree as HCL, the way HCL v1's JSON
//! front end does: object members in document order (repeated keys kept), numbers and
//! booleans as their text, `null` as the empty string, and a member whose value is a
//! non-empty array of objects turned into one member per object (HCL v1's "flatten"), which
//! is why `{"key_prefix": [{"foo/": [{"policy": "read"}]}]}` means the same as
//! `{"key_prefix": {"foo/": {"policy": "read"}}}`.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::hcl::{Item, Node};

/// Parse a JSON document (an object) into its top-level items; the error is serde_json's.
pub(super) fn parse(src: &str) -> Result<Vec<Item>, String> {
    match serde_json::from_str::<JsonNode>(src) {
        Ok(JsonNode(Node::Object(items))) => Ok(items),
        Ok(JsonNode(other)) => Err(format!("expected an object, got {}", other.describe())),
        Err(e) => Err(e.to_string()),
    }
}

struct JsonNode(Node);

impl<'de> Deserialize<'de> for JsonNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde_json's recursion limit bounds how deep this goes.
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = JsonNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsonNode, E> {
        Ok(scalar(v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<JsonNode, E> {
        Ok(scalar(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<JsonNode, E> {
        Ok(scalar(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<JsonNode, E> {
        Ok(scalar(v.to_string()))
    }

    fn visit_str<E>(self, v: &str) -> Result<JsonNode, E> {
        Ok(scalar(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<JsonNode, E> {
        Ok(scalar(v))
    }

    fn visit_unit<E>(self) -> Result<JsonNode, E> {
        Ok(scalar(String::new()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonNode, A::Error> {
        let mut out = Vec::new();
        while let Some(JsonNode(n)) = seq.next_element()? {
            out.push(n);
        }
        Ok(JsonNode(Node::List(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonNode, A::Error> {
        let mut items = Vec::new();
        while let Some((key, JsonNode(val))) = map.next_entry::<String, JsonNode>()? {
            match val {
                Node::List(elems)
                    if !elems.is_empty() && elems.iter().all(|e| matches!(e, Node::Object(_))) =>
                {
                    items.extend(elems.into_iter().map(|e| item(key.clone(), e)));
                }
                val => items.push(item(key, val)),
            }
        }
        Ok(JsonNode(Node::Object(items)))
    }
}

fn scalar(s: String) -> JsonNode {
    JsonNode(Node::Scalar(s))
}

fn item(key: String, val: Node) -> Item {
    Item {
        keys: vec![key],
        val,
        at: None,
    }
}
