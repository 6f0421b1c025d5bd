import CDCMTK
import Foundation

/// A DICOM operation that failed: a file, an association, a peer's answer. Said so that a
/// service engineer knows which peer and what to check.
public struct DicomFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// DCMTK, reached through the CDCMTK shim: datasets to and from its objects, Part 10 files.
enum DCMTK {
    /// DCMTK's one-time set-up: its logging quietened to errors, its dictionary checked.
    static let ready: Result<Void, DicomFailure> = {
        var err = [CChar](repeating: 0, count: 512)
        return dx_dcm_init(&err, err.count) == 0 ? .success(()) : .failure(DicomFailure(DCMTK.text(err)))
    }()

    /// The text in a C buffer up to its terminating NUL (UTF-8; invalid bytes replaced).
    static func text(_ buffer: [CChar]) -> String {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Calls `body` with an error buffer; a -1 from it becomes a DicomFailure with its text.
    static func checked(_ what: @autoclosure () -> String = "", _ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws(DicomFailure) {
        var err = [CChar](repeating: 0, count: 1024)
        let rc = err.withUnsafeMutableBufferPointer { buf in buf.baseAddress.map { body($0, buf.count) } ?? -1 }
        if rc != 0 {
            let text = DCMTK.text(err)
            let prefix = what()
            throw DicomFailure(prefix.isEmpty ? text : "\(prefix): \(text)")
        }
    }

    /// A DCMTK dataset holding `dataset`, owned by the caller (dx_dcm_free).
    static func encode(_ dataset: DicomDataset) throws(DicomFailure) -> OpaquePointer {
        try ready.get()
        guard let handle = dx_dcm_new() else { throw DicomFailure("out of memory") }
        do {
            try fill(handle, with: dataset)
        } catch {
            dx_dcm_free(handle)
            throw error
        }
        return handle
    }

    private static func fill(_ handle: OpaquePointer, with dataset: DicomDataset) throws(DicomFailure) {
        for tag in dataset.tags {
            guard let value = dataset[tag] else { continue }
            switch value {
            case .text(let s):
                guard !s.utf8.contains(0) else { throw DicomFailure("\(tag): text with a NUL character") }
                try checked { dx_dcm_put_string(handle, tag.packed, s, $0, $1) }
            case .empty:
                try checked { dx_dcm_put_empty(handle, tag.packed, $0, $1) }
            case .bytes(let bytes, let words):
                try checked { err, len in bytes.withUnsafeBufferPointer { dx_dcm_put_bytes(handle, tag.packed, $0.baseAddress, $0.count, words ? 1 : 0, err, len) } }
            case .sequence(let items):
                for item in items {
                    var err = [CChar](repeating: 0, count: 512)
                    guard let child = dx_dcm_append_item(handle, tag.packed, &err, err.count) else { throw DicomFailure(DCMTK.text(err)) }
                    try fill(child, with: item)
                }
            }
        }
    }

    /// The dataset DCMTK holds at `handle`, every attribute read back (texts as DCMTK reads
    /// them; trailing padding removed).
    static func decode(_ handle: OpaquePointer) -> DicomDataset {
        var out = DicomDataset()
        for i in 0..<dx_dcm_count(handle) {
            var packed: UInt32 = 0, kind: Int32 = 0
            guard dx_dcm_at(handle, i, &packed, &kind) == 0 else { continue }
            let tag = DicomTag(UInt16(packed >> 16), UInt16(packed & 0xFFFF))
            switch kind {
            case 1:
                let items = (0..<dx_dcm_item_count(handle, packed)).compactMap { dx_dcm_item(handle, packed, $0).map(decode) }
                out[tag] = items.isEmpty ? .empty : .sequence(items)
            case 2:
                var bytes: UnsafeMutablePointer<UInt8>?, count = 0, words: Int32 = 0
                if dx_dcm_get_bytes(handle, packed, &bytes, &count, &words) == 0, let bytes {
                    out[tag] = .bytes(Array(UnsafeBufferPointer(start: bytes, count: count)), words: words != 0)
                    free(bytes)
                }
            default:
                var needed = 0
                guard dx_dcm_get_string(handle, packed, nil, 0, &needed) == 0 else { continue }
                var buf = [CChar](repeating: 0, count: max(needed, 1))
                _ = dx_dcm_get_string(handle, packed, &buf, buf.count, &needed)
                let text = DCMTK.text(buf)
                out[tag] = text.isEmpty ? .empty : .text(text)
            }
        }
        return out
    }
}

/// DICOM Part 10 files: written and read by DCMTK.
public enum DicomFile {
    /// Writes `dataset` to `path` (explicit VR little endian): to a temporary file beside it
    /// first, renamed into place, so that a reader never sees half a file. `durable`: the
    /// file and its folder are on the disk (fsync) when this returns, as the queue needs
    /// before it records the object.
    public static func write(_ dataset: DicomDataset, to path: String, durable: Bool = false) throws(DicomFailure) {
        let handle = try DCMTK.encode(dataset)
        defer { dx_dcm_free(handle) }
        let temporary = path + ".partial"
        try DCMTK.checked { dx_dcm_save(handle, temporary, $0, $1) }
        try place(temporary, at: path, durable: durable)
    }

    /// Writes a short text file the same way (always durable).
    public static func writeText(_ text: String, to path: String) throws(DicomFailure) {
        let temporary = path + ".partial"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)) else { throw DicomFailure("cannot write \(temporary)") }
        try place(temporary, at: path, durable: true)
    }

    private static func place(_ temporary: String, at path: String, durable: Bool) throws(DicomFailure) {
        func why() -> String { String(decoding: Array(String(cString: strerror(errno)).utf8), as: UTF8.self) }
        if durable {
            let fd = open(temporary, O_RDONLY | O_CLOEXEC)
            guard fd >= 0, fsync(fd) == 0 else {
                let e = why()
                if fd >= 0 { close(fd) }
                unlink(temporary)
                throw DicomFailure("cannot write \(path): \(e)")
            }
            close(fd)
        }
        guard rename(temporary, path) == 0 else {
            let e = why()
            unlink(temporary)
            throw DicomFailure("cannot write \(path): \(e)")
        }
        if durable {
            let dir = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dir >= 0 { _ = fsync(dir); close(dir) }
        }
    }

    /// Reads the dataset of the Part 10 file at `path`.
    public static func read(_ path: String) throws(DicomFailure) -> DicomDataset {
        try DCMTK.ready.get()
        var err = [CChar](repeating: 0, count: 1024)
        guard let handle = dx_dcm_load(path, &err, err.count) else { throw DicomFailure(DCMTK.text(err)) }
        defer { dx_dcm_free(handle) }
        return DCMTK.decode(handle)
    }
}
