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
actor ScheduledPatients {
    /// A listing older than this is asked for again at the next request.
    static let maximumAge: Duration = .seconds(60)

    let configPath: String
    private var last: (status: Int, json: [String: JSONValue], at: ContinuousClock.Instant)?
    private var refreshing = false

    init(configPath: String) { self.configPath = configPath }

    /// The last listing at once, never waiting for the worklist: a request of the page must
    /// not hold one of the browser's six connections to the console (Stop needs one) for as
    /// long as a slow RIS takes. A listing older than `maximumAge`, or `refresh`, starts one
    /// query in the background (never two at once); `refreshing` says one is under way and
    /// the page asks again shortly.
    func answer(refresh: Bool) -> (status: Int, json: [String: JSONValue]) {
        let now = ContinuousClock.now
        if !refreshing, refresh || last.map({ now - $0.at > Self.maximumAge }) ?? true {
            refreshing = true
            let path = configPath
            Task.detached { [weak self] in
                let result = await Self.query(configPath: path)
                await self?.finished(result)
            }
        }
        var json = last?.json ?? ["configured": .null, "note": .string("asking the worklist…")]
        json["refreshing"] = .bool(refreshing)
        if let at = last?.at { json["age_s"] = .number(((now - at) / .milliseconds(100)).rounded() / 10) }
        return (last?.status ?? 200, json)
    }

    private func finished(_ result: (status: Int, json: [String: JSONValue])) {
        last = (result.status, result.json, ContinuousClock.now)
        refreshing = false
    }

    /// One C-FIND: `{configured, station, date, items: [...], left_out: [...]}`, or
    /// `{configured: false, note}` with no worklist peer, or `{configured: true, error}` when
    /// the query failed. As long as the peer's own timeouts (`connect_timeout_s`,
    /// `association_timeout_s`, `message_timeout_s` of the DICOM settings) allow.
    static func query(configPath: String, today: String = DicomDate.today()) async -> (status: Int, json: [String: JSONValue]) {
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
            answers = try await Blocking.run { try association.findWorklist(query.dataset) }
        } catch {
            return (503, ["configured": .bool(true), "error": .string("worklist \(peer.aeTitle)@\(peer.host):\(peer.port): \(error)")])
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
