import CDCMTK
import Foundation

/// An exam's objects as DICOM interchange media (PS3.10, PS3.11 General Purpose CD-R,
/// STD-GEN-CD): the files under `DICOM/` with file IDs media readers accept, and a DICOMDIR
/// at the root listing every file there by patient, study and series. What a CD or a USB
/// stick for another hospital's viewer needs (docs/dicom-conformance.md, "Media").
public enum DicomMedia {
    /// The folder of an exam's files on the medium, relative to its root: `DICOM/EX000012`.
    public static func examFolder(_ examID: Int64) -> String {
        "DICOM/EX" + String(format: "%06lld", examID % 1_000_000)
    }

    /// A file ID component (at most 8 of A–Z, 0–9 and _) for an object of the exam, by its
    /// name in the queue: `image-ap_spine` APSPINE, `report-2` REPORT2, `results-sr` RESULTS,
    /// `dose-sr` DOSE; another name OBJ and its place in `names`.
    public static func fileID(forObjectNamed name: String, among names: [String]) -> String {
        switch name {
        case "image-ap_spine": return "APSPINE"
        case "image-left_hip": return "LEFTHIP"
        case "image-right_hip": return "RIGHTHIP"
        case "image-lateral_spine": return "LATSPINE"
        case "results-sr": return "RESULTS"
        case "dose-sr": return "DOSE"
        case "rejection": return "REJECTED"
        default:
            if name.hasPrefix("report-"), let n = Int(name.dropFirst("report-".count)), (1...9999).contains(n) {
                return "REPORT" + (n < 100 ? String(n) : String(format: "%02d", n % 100))
            }
            return "OBJ" + String(format: "%05d", (names.firstIndex(of: name) ?? 0) % 100_000)
        }
    }

    /// Whether `id` is a PS3.10 file ID: components of 1 to 8 of A–Z, 0–9 and _, at most 8 of
    /// them, joined by '/'.
    public static func isFileID(_ id: String) -> Bool {
        let parts = id.split(separator: "/", omittingEmptySubsequences: false)
        return (1...8).contains(parts.count) && parts.allSatisfy { p in
            (1...8).contains(p.count) && p.utf8.allSatisfy { (65...90).contains($0) || (48...57).contains($0) || $0 == 95 }
        }
    }

    /// Writes `root`/DICOMDIR for `files` (file IDs relative to `root`), in place of any there.
    public static func writeDirectory(root: String, files: [String], filesetID: String = "DX1_EXPORT") throws(DicomFailure) {
        try DCMTK.ready.get()
        if let bad = files.first(where: { !isFileID($0) }) { throw DicomFailure("\(bad) is not a DICOM file ID") }
        let cStrings = files.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        guard cStrings.allSatisfy({ $0 != nil }) else { throw DicomFailure("out of memory") }
        let pointers: [UnsafePointer<CChar>?] = cStrings.map { $0.map { UnsafePointer($0) } }
        try DCMTK.checked { err, len in
            pointers.withUnsafeBufferPointer { dx_dcm_dicomdir(root, $0.baseAddress, $0.count, filesetID, err, len) }
        }
    }

    /// Every file ID under `root`/DICOM (what earlier exports put there), sorted.
    public static func filesOnMedium(root: String) -> [String] {
        let base = (root as NSString).appendingPathComponent("DICOM")
        guard let walker = FileManager.default.enumerator(atPath: base) else { return [] }
        var out: [String] = []
        while let next = walker.nextObject() as? String {
            var isDirectory: ObjCBool = false
            let full = (base as NSString).appendingPathComponent(next)
            guard FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            let id = "DICOM/" + next
            if isFileID(id) { out.append(id) }
        }
        return out.sorted()
    }
}
