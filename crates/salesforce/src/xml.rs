//! Just enough XML for Bulk API 1.0 documents (jobInfo, batchInfo, batchInfoList, result-list):
//! flat groups of leaf elements, namespaces ignored.

use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::error::{Error, Result};

/// The leaf elements of every `<group>` element, in document order.
pub(crate) fn groups(xml: &str, group: &str) -> Result<Vec<HashMap<String, String>>> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut current: Option<HashMap<String, String>> = None;
    let mut leaf: Option<String> = None;
    loop {
        match reader
            .read_event()
            .map_err(|e| Error::protocol(format!("bad xml: {e}")))?
        {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if name == group {
                    current = Some(HashMap::new());
                } else {
                    leaf = Some(name);
                }
            }
            Event::Text(t) => {
                if let (Some(map), Some(name)) = (current.as_mut(), leaf.as_ref()) {
                    let text = t
                        .unescape()
                        .map_err(|e| Error::protocol(format!("bad xml: {e}")))?;
                    map.insert(name.clone(), text.into_owned());
                }
            }
            Event::End(e) => {
                if e.local_name().as_ref() == group.as_bytes() {
                    out.extend(current.take());
                }
                leaf = None;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The texts of every `<tag>` element.
pub(crate) fn leaves(xml: &str, tag: &str) -> Result<Vec<String>> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut inside = false;
    loop {
        match reader
            .read_event()
            .map_err(|e| Error::protocol(format!("bad xml: {e}")))?
        {
            Event::Start(e) => inside = e.local_name().as_ref() == tag.as_bytes(),
            Event::Text(t) if inside => {
                let text = t
                    .unescape()
                    .map_err(|e| Error::protocol(format!("bad xml: {e}")))?;
                out.push(text.into_owned());
            }
            Event::End(_) => inside = false,
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_info_list() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><batchInfoList xmlns="http://www.force.com/2009/06/asyncapi/dataload">
<batchInfo><id>751A</id><jobId>750A</jobId><state>Completed</state><numberRecordsProcessed>10</numberRecordsProcessed></batchInfo>
<batchInfo><id>751B</id><jobId>750A</jobId><state>Failed</state><stateMessage>InvalidBatch : a &amp; b</stateMessage></batchInfo>
</batchInfoList>"#;
        let g = groups(xml, "batchInfo").unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0]["id"], "751A");
        assert_eq!(g[1]["stateMessage"], "InvalidBatch : a & b");
    }

    #[test]
    fn result_list() {
        let xml = r#"<result-list xmlns="http://www.force.com/2009/06/asyncapi/dataload"><result>752A</result><result>752B</result></result-list>"#;
        assert_eq!(leaves(xml, "result").unwrap(), ["752A", "752B"]);
    }
}
