//! Payloads: DNS messages (a minimal query or response, and the large
//! responses an open resolver reflects) and NTP mode 7 monlist requests and
//! responses (what NTP amplification sends and gets).

/// A DNS message for a UDP payload: the header (id, flags 0x0100 for a
/// query or 0x8180 for a response, one question, one answer if a
/// response) and `extra` filler bytes.
pub fn dns_message(id: u16, response: bool, extra: usize) -> Vec<u8> {
    let flags: u16 = if response { 0x8180 } else { 0x0100 };
    let mut payload = Vec::new();
    payload.extend(id.to_be_bytes());
    payload.extend(flags.to_be_bytes());
    payload.extend([0, 1, 0, u8::from(response), 0, 0, 0, 0]);
    payload.extend(std::iter::repeat_n(0x61, extra));
    payload
}

/// A DNS response of exactly `len` bytes: id `txid`, flags QR RD RA, one
/// question (example.org ANY), answers of TXT records filling the rest, as
/// an open resolver reflects them.
pub fn dns_response(txid: u16, len: usize) -> Vec<u8> {
    const QNAME: &[u8] = b"\x07example\x03org\x00";
    const RECORD_FIXED: usize = 2 + 2 + 2 + 4 + 2 + 1; // name ptr, type, class, ttl, rdlength, string length
    const RECORD_MAX: usize = RECORD_FIXED + 255;
    let mut out = Vec::with_capacity(len);
    out.extend(txid.to_be_bytes());
    out.extend(0x8180u16.to_be_bytes());
    out.extend([0, 1, 0, 0, 0, 0, 0, 0]); // qd 1, an (below), ns 0, ar 0
    out.extend(QNAME);
    out.extend([0, 255, 0, 1]); // ANY, IN
    assert!(
        len >= out.len() + RECORD_FIXED,
        "a {len}-byte DNS response is too short"
    );
    let mut answers: u16 = 0;
    while out.len() < len {
        let remaining = len - out.len();
        let size = if remaining <= RECORD_MAX {
            remaining
        } else {
            RECORD_MAX.min(remaining - RECORD_FIXED)
        };
        let text = size - RECORD_FIXED;
        out.extend([0xc0, 12, 0, 16, 0, 1]); // pointer to the question's name, TXT, IN
        out.extend(3600u32.to_be_bytes());
        out.extend(((text + 1) as u16).to_be_bytes());
        out.push(text as u8);
        out.extend(std::iter::repeat_n(b'v', text));
        answers += 1;
    }
    out[6..8].copy_from_slice(&answers.to_be_bytes());
    out
}

/// A DNS query as a reflection attack sends it: id `id`, recursion desired,
/// one question (`name`, type `qtype`, class IN) and an OPT record
/// advertising `udp_size` bytes (EDNS), so that a server answers in full.
pub fn dns_query(id: u16, name: &str, qtype: u16, udp_size: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + name.len() + 2 + 4 + 11);
    out.extend(id.to_be_bytes());
    out.extend(0x0100u16.to_be_bytes()); // a query, RD
    out.extend([0, 1, 0, 0, 0, 0, 0, 1]); // qd 1, an 0, ns 0, ar 1 (the OPT)
    for label in name.trim_end_matches('.').split('.') {
        let label = label.as_bytes();
        assert!(
            !label.is_empty() && label.len() < 64,
            "{name}: not a DNS name"
        );
        out.push(label.len() as u8);
        out.extend(label);
    }
    out.push(0);
    out.extend(qtype.to_be_bytes());
    out.extend(1u16.to_be_bytes()); // IN
    // OPT: root name, type 41, class = UDP size, TTL 0 (version 0, no DO), no options.
    out.push(0);
    out.extend(41u16.to_be_bytes());
    out.extend(udp_size.to_be_bytes());
    out.extend([0, 0, 0, 0, 0, 0]);
    out
}

/// An NTP client (mode 3, version 4) request of 48 bytes whose transmit
/// timestamp differs for every `n`, as a reflection attack sends it.
pub fn ntp_client_request(n: u64) -> [u8; 48] {
    let mut request = [0u8; 48];
    request[0] = 4 << 3 | 3;
    request[40..48].copy_from_slice(&(0x1234_5678_0000_0000 | n).to_be_bytes());
    request
}

/// An NTP mode 7 MON_GETLIST_1 request (what monlist amplification sends):
/// version 2, mode 7, implementation XNTPD (3), request 42, padded to 48 bytes.
pub const NTP_MONLIST_QUERY: [u8; 48] = {
    let mut query = [0u8; 48];
    query[0] = 0x17;
    query[2] = 0x03;
    query[3] = 0x2a;
    query
};

/// An NTP mode 7 MON_GETLIST_1 response: response and more bits, version 2,
/// mode 7 (0xd7), six 72-byte entries of random addresses: 440 bytes.
pub fn ntp_monlist_response(random: &mut impl FnMut() -> u64) -> Vec<u8> {
    let mut out = vec![0xd7, 0x00, 0x03, 0x2a, 0x00, 0x06, 0x00, 0x48];
    for _ in 0..6 {
        let mut entry = [0u8; 72];
        for chunk in entry.chunks_mut(8) {
            chunk.copy_from_slice(&random().to_be_bytes()[..chunk.len()]);
        }
        out.extend(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be16(bytes: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([bytes[at], bytes[at + 1]])
    }

    #[test]
    fn dns_queries_ask_one_question_with_edns() {
        let query = dns_query(0x1234, "big.zone.test", 16, 4096);
        assert_eq!(be16(&query, 0), 0x1234);
        assert_eq!(be16(&query, 2), 0x0100, "a query, RD");
        assert_eq!(be16(&query, 4), 1);
        assert_eq!(be16(&query, 10), 1, "one additional record: the OPT");
        let qname = b"\x03big\x04zone\x04test\x00";
        assert_eq!(&query[12..12 + qname.len()], qname);
        let at = 12 + qname.len();
        assert_eq!(be16(&query, at), 16, "TXT");
        assert_eq!(be16(&query, at + 2), 1, "IN");
        assert_eq!(query[at + 4], 0, "OPT owner: the root");
        assert_eq!(be16(&query, at + 5), 41);
        assert_eq!(be16(&query, at + 7), 4096);
        assert_eq!(query.len(), at + 4 + 11);
    }

    #[test]
    fn ntp_client_requests_differ_by_transmit_time() {
        let (a, b) = (ntp_client_request(1), ntp_client_request(2));
        assert_eq!(a[0] & 7, 3, "mode 3");
        assert_eq!(a[0] >> 3 & 7, 4, "version 4");
        assert_ne!(a[40..], b[40..]);
    }

    #[test]
    fn dns_responses_have_the_asked_length_and_count_their_answers() {
        for len in [42, 100, 297, 300, 310, 1200, 2992] {
            let response = dns_response(0xabcd, len);
            assert_eq!(response.len(), len);
            assert_eq!(be16(&response, 0), 0xabcd);
            assert_eq!(be16(&response, 2) & 0x8000, 0x8000, "QR set");
            // Walk the answers.
            let mut at = 12 + 13 + 4;
            let mut answers = 0;
            while at < len {
                assert_eq!(be16(&response, at), 0xc00c);
                let rdlength = usize::from(be16(&response, at + 10));
                assert_eq!(usize::from(response[at + 12]) + 1, rdlength);
                at += 12 + rdlength;
                answers += 1;
            }
            assert_eq!(at, len);
            assert_eq!(be16(&response, 6), answers);
        }
    }
}
