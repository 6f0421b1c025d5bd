import DXControl
import DXDicom
import Foundation

/// The day's scheduled patients from the hospital's Modality Worklist, as `dexa worklist`
/// lists them: the console asks the worklist peer of the DICOM settings (C-FIND, from this
/// process, which serves the page and never drives the scanner) for this station's steps
/// today. Each item comes with the exam it registers (`WorklistItem.registration`, as `dexa
/// exam new --worklist` makes it) or why it cannot (a sex the reference data do not have, no
/// birth date): the page creates the exam with `exam.create` and those parameters, through
/// dexad as any exam is.
enum ScheduledPatients {
    /// Longer than a worklist's usual answer (a second), shorter than a technologist waits.
    static let timeout: Duration = .seconds(15)

    /// `{configured, station, date, items: [...], left_out: [...]}`, or `{configured: false,
    /// note}` with no worklist peer, or `{configured: true, error}` when the query failed.
    static func read(configPath: String, today: String = DicomDate.today()) async -> (status: Int, json: [String: JSONValue]) {
        let config: DicomConfiguration
        do { config = try DicomConfiguration.load(path: configPath, optional: true) } catch {
            return (500, ["configured": .bool(false), "error": .string(error.description)])
        }
        guard let peer = config.worklist else {
            return (200, ["configured": .bool(false), "note": .string("no worklist peer in \(configPath) (worklist = AE@host:port): patients are registered by hand")])
        }
        let query = WorklistQuery(stationAETitle: config.aeTitle, date: today, modality: config.worklistModality)
        let association = DicomAssociation(peer: peer, callingAETitle: config.aeTitle)
        let answers: DicomAssociation.WorklistAnswers
        do {
            answers = try await withTimeout(timeout) {
                try await Blocking.run { try association.findWorklist(query.dataset) }
            }
        } catch let e as DicomFailure {
            return (503, ["configured": .bool(true), "error": .string("worklist \(peer.aeTitle)@\(peer.host):\(peer.port): \(e.description)")])
        } catch {
            return (503, ["configured": .bool(true), "error": .string("worklist \(peer.aeTitle)@\(peer.host):\(peer.port): no answer within 15 s")])
        }
        let listing = WorklistListing(answers)
        var items: [JSONValue] = []
        for item in listing.items {
            guard case .object(var fields) = (try? JSONValue(encoding: item)) ?? .null else { continue }
            fields["display_name"] = .string(item.displayName)
            fields["scheduled_start"] = .string(item.scheduledStart)
            fields["birth_date"] = item.birthDateISO.map(JSONValue.string) ?? .null
            switch item.registration() {
            case .success(let r): fields["registration"] = (try? JSONValue(encoding: r)) ?? .null
            case .failure(let why): fields["problem"] = .string(why.description)
            }
            items.append(.object(fields))
        }
        return (200, ["configured": .bool(true), "station": .string(config.aeTitle), "date": .string(DicomDate.iso(today) ?? today),
                      "items": .array(items), "left_out": .array(listing.leftOut.map(JSONValue.string))])
    }
}
