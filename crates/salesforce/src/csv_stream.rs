//! Incremental CSV decoding for Bulk results: bytes go in as they arrive from the socket, rows
//! come out as soon as they are complete. Memory is one row plus one network chunk, whatever the
//! size of the result. Quotes, doubled quotes, embedded newlines, CRLF and chunk boundaries in the
//! middle of a field are handled by `csv_core`; an empty cell decodes to `None`.

use std::collections::VecDeque;
use std::sync::Arc;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use crate::error::{Error, Result};

pub(crate) type Row = Vec<Option<String>>;

pub(crate) struct CsvDecoder {
    reader: Reader,
    /// Field bytes of the row being decoded.
    out: Vec<u8>,
    out_len: usize,
    /// Field end offsets into `out`.
    ends: Vec<usize>,
    ends_len: usize,
    header: Option<Arc<[String]>>,
    rows: VecDeque<Row>,
    finished: bool,
}

impl CsvDecoder {
    pub fn new(delimiter: u8) -> CsvDecoder {
        CsvDecoder {
            reader: ReaderBuilder::new().delimiter(delimiter).build(),
            out: vec![0; 4096],
            out_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            header: None,
            rows: VecDeque::new(),
            finished: false,
        }
    }

    /// The header row, once decoded.
    pub fn header(&self) -> Option<&Arc<[String]>> {
        self.header.as_ref()
    }

    /// Decodes `input`; complete rows become available from [`CsvDecoder::pop`].
    pub fn feed(&mut self, input: &[u8]) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        self.decode(input, false)
    }

    /// csv_core reads an empty input as end of file, so it is only passed on at the end.
    fn decode(&mut self, mut input: &[u8], at_eof: bool) -> Result<()> {
        loop {
            if input.is_empty() && !at_eof {
                return Ok(());
            }
            let (result, nin, nout, nend) = self.reader.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            match result {
                ReadRecordResult::InputEmpty => return Ok(()),
                ReadRecordResult::OutputFull => {
                    let len = self.out.len() * 2;
                    self.out.resize(len, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                ReadRecordResult::Record => self.take_row()?,
                ReadRecordResult::End => {
                    self.finished = true;
                    return Ok(());
                }
            }
        }
    }

    /// Signals the end of input, flushing a last row that had no line terminator.
    pub fn finish(&mut self) -> Result<()> {
        if !self.finished {
            self.decode(&[], true)?;
        }
        Ok(())
    }

    pub fn pop(&mut self) -> Option<Row> {
        self.rows.pop_front()
    }

    fn take_row(&mut self) -> Result<()> {
        let mut row = Vec::with_capacity(self.ends_len);
        let mut start = 0;
        for &end in &self.ends[..self.ends_len] {
            let bytes = &self.out[start..end];
            start = end;
            if bytes.is_empty() {
                row.push(None);
            } else {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| Error::protocol("csv result is not utf-8"))?;
                row.push(Some(text.to_owned()));
            }
        }
        self.out_len = 0;
        self.ends_len = 0;
        match &self.header {
            None => {
                let names: Vec<String> = row.into_iter().map(Option::unwrap_or_default).collect();
                self.header = Some(names.into());
            }
            Some(header) => {
                // A blank line decodes as one empty field; Salesforce never sends one as data.
                if row.len() == 1 && row[0].is_none() && header.len() != 1 {
                    return Ok(());
                }
                if row.len() != header.len() {
                    return Err(Error::protocol(format!(
                        "csv row has {} fields, header has {}",
                        row.len(),
                        header.len()
                    )));
                }
                self.rows.push_back(row);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_chunks(data: &[u8], chunk: usize) -> (Vec<String>, Vec<Row>) {
        let mut d = CsvDecoder::new(b',');
        let mut rows = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            d.feed(piece).unwrap();
            while let Some(r) = d.pop() {
                rows.push(r);
            }
        }
        d.finish().unwrap();
        while let Some(r) = d.pop() {
            rows.push(r);
        }
        (d.header().unwrap().to_vec(), rows)
    }

    const SAMPLE: &[u8] = b"\"Id\",\"Name\",\"Description\",\"Amount\"\n\
\"001A\",\"Acme, Inc.\",\"line one\nline two\",\"12.50\"\n\
\"001B\",\"say \"\"hi\"\"\",\"\",\"\"\n\
\"001C\",\"\xc3\xa9t\xc3\xa9\",\"crlf\r\ninside\",\"3\"\r\n";

    fn expected() -> Vec<Row> {
        let s = |v: &str| Some(v.to_owned());
        vec![
            vec![
                s("001A"),
                s("Acme, Inc."),
                s("line one\nline two"),
                s("12.50"),
            ],
            vec![s("001B"), s("say \"hi\""), None, None],
            vec![s("001C"), s("été"), s("crlf\r\ninside"), s("3")],
        ]
    }

    #[test]
    fn decodes_quotes_newlines_and_empty_as_null() {
        let (header, rows) = decode_in_chunks(SAMPLE, SAMPLE.len());
        assert_eq!(header, ["Id", "Name", "Description", "Amount"]);
        assert_eq!(rows, expected());
    }

    #[test]
    fn any_chunk_boundary_gives_the_same_rows() {
        for chunk in 1..SAMPLE.len() {
            let (_, rows) = decode_in_chunks(SAMPLE, chunk);
            assert_eq!(rows, expected(), "chunk size {chunk}");
        }
    }

    #[test]
    fn last_row_without_newline_is_flushed() {
        let (_, rows) = decode_in_chunks(b"\"Id\"\n\"1\"\n\"2\"", 3);
        assert_eq!(
            rows,
            vec![vec![Some("1".to_owned())], vec![Some("2".to_owned())]]
        );
    }

    #[test]
    fn unquoted_and_long_fields() {
        let long = "x".repeat(200_000);
        let data = format!("Id,Body\n1,{long}\n2,short\n");
        let (_, rows) = decode_in_chunks(data.as_bytes(), 8192);
        assert_eq!(rows[0][1].as_deref(), Some(long.as_str()));
        assert_eq!(rows[1][1].as_deref(), Some("short"));
    }

    #[test]
    fn ragged_rows_are_protocol_errors() {
        let mut d = CsvDecoder::new(b',');
        let err = d.feed(b"a,b\n1,2,3\n").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Protocol);
    }

    #[test]
    fn header_only_gives_no_rows() {
        let (header, rows) = decode_in_chunks(b"\"Id\",\"Name\"\n", 4);
        assert_eq!(header.len(), 2);
        assert!(rows.is_empty());
    }
}
