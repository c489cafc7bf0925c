//! A small Avro binary reader written from the Avro specification, driven by the schema JSON
//! that GetSchema returns: the independent reader the encoding is checked against (the
//! simulator encodes with apache-avro).

use serde_json::{json, Value};

pub fn decode(schema_json: &str, bytes: &[u8]) -> Value {
    let schema: Value = serde_json::from_str(schema_json).expect("schema is JSON");
    let mut r = Reader { bytes, pos: 0 };
    let v = r.read(&schema);
    assert_eq!(r.pos, bytes.len(), "trailing bytes after the record");
    v
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn long(&mut self) -> i64 {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.bytes[self.pos];
            self.pos += 1;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        ((n >> 1) as i64) ^ -((n & 1) as i64)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        s
    }

    fn read(&mut self, schema: &Value) -> Value {
        match schema {
            Value::String(t) => self.primitive(t),
            Value::Array(branches) => {
                let i = self.long() as usize;
                self.read(&branches[i])
            }
            Value::Object(o) => match o["type"].as_str().unwrap() {
                "record" => {
                    let mut out = serde_json::Map::new();
                    for f in o["fields"].as_array().unwrap() {
                        out.insert(f["name"].as_str().unwrap().into(), self.read(&f["type"]));
                    }
                    Value::Object(out)
                }
                "enum" => {
                    let i = self.long() as usize;
                    o["symbols"][i].clone()
                }
                "array" => {
                    let mut items = vec![];
                    loop {
                        let mut n = self.long();
                        if n == 0 {
                            break;
                        }
                        if n < 0 {
                            n = -n;
                            self.long();
                        }
                        for _ in 0..n {
                            items.push(self.read(&o["items"]));
                        }
                    }
                    Value::Array(items)
                }
                t => self.primitive(t),
            },
            other => panic!("unexpected schema {other}"),
        }
    }

    fn primitive(&mut self, t: &str) -> Value {
        match t {
            "null" => Value::Null,
            "boolean" => {
                let b = self.take(1)[0];
                json!(b == 1)
            }
            "int" | "long" => json!(self.long()),
            "double" => json!(f64::from_le_bytes(self.take(8).try_into().unwrap())),
            "string" | "bytes" => {
                let n = self.long() as usize;
                json!(String::from_utf8(self.take(n).to_vec()).unwrap())
            }
            other => panic!("unexpected primitive {other}"),
        }
    }
}

/// Field names a bitmap names, the way Salesforce's clients read it: hex to bits, reversed,
/// bit i = the i-th schema field.
pub fn bitmap_fields(schema_json: &str, bitmaps: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(schema_json).unwrap();
    let fields = schema["fields"].as_array().unwrap();
    let Some(top) = bitmaps
        .as_array()
        .and_then(|a| a.first())
        .and_then(|v| v.as_str())
    else {
        return vec![];
    };
    let hex = top.strip_prefix("0x").expect("bitmap starts with 0x");
    let bits: String = hex
        .chars()
        .map(|c| format!("{:04b}", c.to_digit(16).expect("hex digit")))
        .collect();
    bits.chars()
        .rev()
        .enumerate()
        .filter(|(_, b)| *b == '1')
        .map(|(i, _)| fields[i]["name"].as_str().unwrap().to_string())
        .collect()
}
