// Generated from the search server's /openapi.json by `npm run types`: do not edit by hand.
// `npm run types:check` (part of `npm test`) fails when the server and this file disagree.

export interface paths {
    "/": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** ready when an index version is served */
        get: operations["health__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/add_image": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** register an image row (idempotent per event_code + file_path); the pipeline embeds and indexes its file */
        post: operations["add_image_add_image_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/events/{event_code}/duplicates": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** groups of copies of one photograph within an event (verified, never chained) */
        get: operations["event_duplicates_events__event_code__duplicates_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/events/{event_code}/duplicates/check": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** is this uploaded photo already in the event? each match says copy, same_scene or related */
        post: operations["check_duplicate_events__event_code__duplicates_check_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/events/{event_code}/similar-shots": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** groups of different shots of the same scene within an event (keep the best shot) */
        get: operations["similar_shots_events__event_code__similar_shots_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/extract_features": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** the L2-normalised vector of an uploaded image (what the pipeline would index) */
        post: operations["extract_features_extract_features_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/images/{id_or_code}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** an image row and its pipeline status: queued, embedded, indexed (with the index version) or failed (with the reason) */
        get: operations["image_status_images__id_or_code__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/images/{id_or_code}/similar": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** images most similar to an indexed image (by id or code), the image itself excluded */
        get: operations["similar_images__id_or_code__similar_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/metrics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Prometheus metrics */
        get: operations["metrics_metrics_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/search": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** top-k images most similar to a vector, optionally within one event */
        post: operations["search_vector_search_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/search/image": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** images most similar to an uploaded photo: verified copies first, then same-scene shots, then by similarity (rotations included) */
        post: operations["search_image_search_image_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/stats": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** index and database counts, served version, swap state */
        get: operations["stats_stats_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/versions": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** the CURRENT version and the kept backups */
        get: operations["versions_versions_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/versions/check": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** re-hash the served version's files now (also done every INDEX_RECHECK_SECONDS) */
        post: operations["check_versions_versions_check_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /** AddImageMetadata */
        AddImageMetadata: {
            /** File Size */
            file_size?: number | null;
            /** Height */
            height?: number | null;
            /** Mime Type */
            mime_type?: string | null;
            /** Width */
            width?: number | null;
        } & {
            [key: string]: unknown;
        };
        /**
         * AddImageRequest
         * @description The seed's `/add_image` body. `vector` is validated but never indexed: the pipeline embeds the file.
         */
        AddImageRequest: {
            /**
             * Event Code
             * Format: uuid
             * @description an existing event's code
             */
            event_code: string;
            /**
             * File Path
             * @description relative to IMAGE_ROOT; must name an existing file there
             */
            file_path: string;
            /** Filename */
            filename: string;
            metadata?: components["schemas"]["AddImageMetadata"] | null;
            /** Vector */
            vector?: number[] | null;
        };
        /**
         * AddImageResponse
         * @description The seed's `{id, faiss_index, message}` plus the row's code and pipeline status.
         */
        AddImageResponse: {
            /**
             * Code
             * @description NULL in EMS rows made without one
             */
            code: string | null;
            /**
             * Created
             * @description false: this (event_code, file_path) was registered before and that row is returned (retrying is safe)
             */
            created: boolean;
            /** Event Code */
            event_code: string;
            /** Faiss Index */
            faiss_index?: number | null;
            /** Id */
            id: number;
            /**
             * Message
             * @default success
             */
            message: string;
            /**
             * Status
             * @description queued for a new row: the pipeline embeds and indexes the file on its next run (GET /images/{id} follows it)
             * @default queued
             * @enum {string}
             */
            status: "queued" | "embedded" | "indexed" | "failed";
            /**
             * Vector Ignored
             * @description a client vector was sent: validated, not indexed
             * @default false
             */
            vector_ignored: boolean;
        };
        /** Body_check_duplicate_events__event_code__duplicates_check_post */
        Body_check_duplicate_events__event_code__duplicates_check_post: {
            /**
             * File
             * Format: binary
             * @description an image file (JPEG, PNG, WebP, GIF, TIFF, BMP...), not empty
             */
            file: string;
            /**
             * Min Score
             * @description cosine below which a candidate is not listed; default 0.3
             */
            min_score?: number;
            /**
             * Top K
             * @default 10
             */
            top_k: number;
        };
        /** Body_extract_features_extract_features_post */
        Body_extract_features_extract_features_post: {
            /**
             * File
             * Format: binary
             * @description an image file (JPEG, PNG, WebP, GIF, TIFF, BMP...), not empty
             */
            file: string;
        };
        /** Body_search_image_search_image_post */
        Body_search_image_search_image_post: {
            /**
             * Event Code
             * @description only images of this event (UUID; empty: all)
             */
            event_code?: string;
            /**
             * File
             * Format: binary
             * @description a JPEG, PNG, WebP, TIFF... photo
             */
            file: string;
            /** Min Score */
            min_score?: number;
            /**
             * Top K
             * @default 10
             */
            top_k: number;
        };
        /**
         * DeletedFilterState
         * @description The server's set of deleted images of the served version (serving/deleted.py).
         */
        DeletedFilterState: {
            /**
             * Age Seconds
             * @description since the listener last confirmed the set complete
             */
            age_seconds: number | null;
            /**
             * Catch Ups
             * @description anti-joins run (per version, (re)connect, TRUNCATE, periodic)
             */
            catch_ups: number;
            /**
             * Database Fallbacks
             * @description filter calls that asked the database (set stale or not built)
             */
            database_fallbacks: number;
            /**
             * Deleted Known
             * @description ids of that version no longer in `images`
             */
            deleted_known: number | null;
            /**
             * Fresh
             * @description searches filter from the set alone (no query per search)
             */
            fresh: boolean;
            /**
             * Listening
             * @description the NOTIFY listener is connected
             */
            listening: boolean;
            /** Notifications */
            notifications: number;
            /**
             * Version
             * @description the version the set was built for
             */
            version: number | null;
        };
        /** DuplicateCheckResponse */
        DuplicateCheckResponse: {
            /**
             * Duplicate
             * @description true only when a match is a copy
             */
            duplicate: boolean;
            /** Event Code */
            event_code: string;
            /** Index Version */
            index_version: number;
            /**
             * Matches
             * @description copies first, then same-scene shots, then related
             */
            matches: components["schemas"]["VerifiedHit"][];
        };
        /** DuplicateGroup */
        DuplicateGroup: {
            /**
             * Images
             * @description images[0] is the reference; every other image was verified as a copy of it (never a chain of similar pairs)
             */
            images: components["schemas"]["DuplicateImage"][];
            /**
             * Score
             * @description the weakest verdict score between the reference and a member (0..1)
             */
            score: number;
        };
        /** DuplicateImage */
        DuplicateImage: {
            /** Code */
            code: string | null;
            /** Filename */
            filename: string | null;
            /** Id */
            id: number;
        };
        /** DuplicatesResponse */
        DuplicatesResponse: {
            /** Event Code */
            event_code: string;
            /** Groups */
            groups: components["schemas"]["DuplicateGroup"][];
            /**
             * Images Checked
             * @description images of the event in the served index version
             */
            images_checked: number;
            /**
             * Images Unverifiable
             * @description of those, images without a duplicate fingerprint (embedded before fingerprints existed): never in a group
             */
            images_unverifiable: number;
            /** Index Version */
            index_version: number;
        };
        /** ErrorResponse */
        ErrorResponse: {
            /** Detail */
            detail: string;
            /** Errors */
            errors?: {
                [key: string]: unknown;
            }[] | null;
            /** Message */
            message: string;
        };
        /** FeaturesResponse */
        FeaturesResponse: {
            /** Dim */
            dim: number;
            /** Model */
            model: string;
            /** Model Version */
            model_version: string;
            /** Processing Time */
            processing_time: number;
            /** Vector */
            vector: number[];
        };
        /** HealthResponse */
        HealthResponse: {
            /**
             * Degraded
             * @description why the served version is not CURRENT's (fallback in use)
             */
            degraded?: string | null;
            /** Index Type */
            index_type?: string | null;
            /** Index Version */
            index_version?: number | null;
            /** Model Version */
            model_version?: string | null;
            /** Status */
            status: string;
            /** Total Vectors */
            total_vectors: number;
        };
        /**
         * ImageStatusResponse
         * @description An `images` row and where the pipeline is with it.
         */
        ImageStatusResponse: {
            /** Attempts */
            attempts?: number | null;
            /** Code */
            code: string | null;
            /**
             * Created At
             * @description images.created_at as stored: ISO 8601, no offset when the column is a TIMESTAMP WITHOUT TIME ZONE (the EMS DDL)
             */
            created_at: string | null;
            /** Embedded At */
            embedded_at?: string | null;
            /**
             * Error
             * @description why embedding failed (status failed)
             */
            error?: string | null;
            /** Event Code */
            event_code: string;
            /** Faiss Index */
            faiss_index: number | null;
            /** File Path */
            file_path: string;
            /** File Size */
            file_size: number | null;
            /** Filename */
            filename: string;
            /** Height */
            height: number | null;
            /** Id */
            id: number;
            /**
             * Index Version
             * @description the served index version holding it (status indexed)
             */
            index_version?: number | null;
            /** Mime Type */
            mime_type: string | null;
            /**
             * Model Version
             * @description the served model the status is about
             */
            model_version: string | null;
            /**
             * Status
             * @description queued (not embedded yet), embedded (not in the served index yet), indexed (searchable now), failed (see error)
             * @enum {string}
             */
            status: "queued" | "embedded" | "indexed" | "failed";
            /** Width */
            width: number | null;
        };
        /** IntegrityState */
        IntegrityState: {
            /** Checks */
            checks: number;
            /** Failures */
            failures: number;
            /** Last Check At */
            last_check_at: string | null;
            /**
             * Last Problem
             * @description None when the last re-check found the served files sound
             */
            last_problem?: string | null;
        };
        /** SearchFilters */
        SearchFilters: {
            /**
             * Event Code
             * @description only images of this event
             */
            event_code?: string | null;
        };
        /**
         * SearchHit
         * @description One result: the seed's four fields plus the image code.
         */
        SearchHit: {
            /** Code */
            code: string | null;
            /** Event Code */
            event_code: string | null;
            /** Filename */
            filename: string | null;
            /** Id */
            id: number;
            /** Similarity Score */
            similarity_score: number;
        };
        /**
         * SearchRequest
         * @description The seed's `/search` body, plus an optional minimum score.
         */
        SearchRequest: {
            filters?: components["schemas"]["SearchFilters"] | null;
            /**
             * Min Score
             * @description drop results below this cosine similarity
             */
            min_score?: number | null;
            /**
             * Top K
             * @default 10
             */
            top_k: number;
            /**
             * Vector
             * @description the served model's dimension; normalised server-side
             */
            vector: number[];
        };
        /** ShotGroup */
        ShotGroup: {
            /**
             * Images
             * @description images[0] is the reference; each other image is another shot of its scene
             */
            images: components["schemas"]["ShotImage"][];
            /**
             * Score
             * @description the weakest verdict score between the reference and a member (0..1)
             */
            score: number;
        };
        /** ShotImage */
        ShotImage: {
            /** Code */
            code: string | null;
            /**
             * Copies
             * @description ids of this shot's copies, collapsed into it
             */
            copies?: number[];
            /** Filename */
            filename: string | null;
            /** Id */
            id: number;
        };
        /** SimilarShotsResponse */
        SimilarShotsResponse: {
            /** Event Code */
            event_code: string;
            /** Groups */
            groups: components["schemas"]["ShotGroup"][];
            /** Images Checked */
            images_checked: number;
            /** Images Unverifiable */
            images_unverifiable: number;
            /** Index Version */
            index_version: number;
        };
        /** StatsResponse */
        StatsResponse: {
            /**
             * Current On Disk
             * @description the version CURRENT names (None: missing or damaged)
             */
            current_on_disk?: number | null;
            /**
             * Current Problem
             * @description what is wrong with CURRENT, if anything
             */
            current_problem?: string | null;
            /** Database */
            database: string;
            /**
             * Degraded
             * @description why the served version is not CURRENT's (fallback in use), or that an object-store DATA_DIR does not answer (served from the local cache)
             */
            degraded?: string | null;
            deleted_filter?: components["schemas"]["DeletedFilterState"] | null;
            /** Embedded */
            embedded: number | null;
            /** Failed */
            failed: number | null;
            /** Index Size Mb */
            index_size_mb: number;
            /** Index Type */
            index_type: string | null;
            /** Index Version */
            index_version: number | null;
            integrity?: components["schemas"]["IntegrityState"] | null;
            /** Model */
            model: string;
            /** Model Version */
            model_version: string | null;
            /**
             * Served From
             * @description store (DATA_DIR/indexes) or backup (BACKUP_DIR)
             */
            served_from?: string | null;
            /** Status */
            status: string;
            /**
             * Storage Problem
             * @description object-store DATA_DIR only: why the last pull failed
             */
            storage_problem?: string | null;
            swap: components["schemas"]["SwapState"];
            /** Total Images Db */
            total_images_db: number | null;
            /** Total Vectors Faiss */
            total_vectors_faiss: number;
        };
        /** SwapState */
        SwapState: {
            /** Failed Versions */
            failed_versions: {
                [key: string]: string;
            };
            /** Failures */
            failures: number;
            /** Last Error */
            last_error: string | null;
            /** Last Swap At */
            last_swap_at: string | null;
            /** Swaps */
            swaps: number;
        };
        /** Verdict */
        Verdict: {
            /**
             * Reason
             * @description the evidence, e.g. 'sha256 equal' or 'inliers 143, agree 0.97'
             */
            reason: string;
            /**
             * Score
             * @description 0..1: pixel agreement for a copy, geometric support for the same scene, the cosine for related (docs/duplicates.md)
             */
            score: number;
        };
        /**
         * VerifiedHit
         * @description A /search hit plus what verification decided about it.
         */
        VerifiedHit: {
            /** Code */
            code: string | null;
            /** Event Code */
            event_code: string | null;
            /** Filename */
            filename: string | null;
            /** Id */
            id: number;
            /**
             * Relation
             * @description copy: the same photograph (the only duplicate); same_scene: another shot; related
             * @enum {string}
             */
            relation: "copy" | "same_scene" | "related";
            /** Similarity Score */
            similarity_score: number;
            verdict: components["schemas"]["Verdict"];
        };
        /** VersionInfo */
        VersionInfo: {
            /**
             * Backup
             * @description BACKUP_DIR holds a copy
             * @default false
             */
            backup: boolean;
            /** Count */
            count?: number | null;
            /** Created At */
            created_at?: string | null;
            /**
             * Current
             * @default false
             */
            current: boolean;
            /** Error */
            error?: string | null;
            /** Index Type */
            index_type?: string | null;
            /** Published At */
            published_at?: string | null;
            /**
             * Served
             * @default false
             */
            served: boolean;
            /** Status */
            status?: string | null;
            /** Version */
            version: number;
        };
        /** VersionsResponse */
        VersionsResponse: {
            /** Current */
            current: number | null;
            /** Current Problem */
            current_problem?: string | null;
            /** Degraded */
            degraded?: string | null;
            /** Model Version */
            model_version: string | null;
            /** Served */
            served: number | null;
            /** Served From */
            served_from?: string | null;
            /** Versions */
            versions: components["schemas"]["VersionInfo"][];
        };
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    health__get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HealthResponse"];
                };
            };
            /** @description no index version loaded yet (the message says why), or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    add_image_add_image_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["AddImageRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AddImageResponse"];
                };
            };
            /** @description X-API-Key missing */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description wrong API key */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description already registered with another filename */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request body over MAX_UPLOAD_MB */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says which field and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description the database is unavailable or did not answer in time, or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    event_duplicates_events__event_code__duplicates_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the event's code (UUID) */
                event_code: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    /** @description `skipped` when neither the server's set of deleted images (kept fresh by NOTIFY) nor the database could say which results were deleted */
                    "X-Deleted-Filter"?: string;
                    /** @description with `skipped`: deletions older than this many seconds were still filtered out (from the server's last confirmed set) */
                    "X-Deleted-Filter-Age"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DuplicatesResponse"];
                };
            };
            /** @description unknown event */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says which field and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description no index loaded yet, or the database did not answer whether the event exists, or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    check_duplicate_events__event_code__duplicates_check_post: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the event's code (UUID) */
                event_code: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "multipart/form-data": components["schemas"]["Body_check_duplicate_events__event_code__duplicates_check_post"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    /** @description `skipped` when neither the server's set of deleted images (kept fresh by NOTIFY) nor the database could say which results were deleted */
                    "X-Deleted-Filter"?: string;
                    /** @description with `skipped`: deletions older than this many seconds were still filtered out (from the server's last confirmed set) */
                    "X-Deleted-Filter-Age"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DuplicateCheckResponse"];
                };
            };
            /** @description unknown event */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description upload over MAX_UPLOAD_MB, or an image too large to decode (pixel or memory budget) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description the file is not an image */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says which field and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description no index loaded yet, or the database did not answer whether the event exists, or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    similar_shots_events__event_code__similar_shots_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the event's code (UUID) */
                event_code: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    /** @description `skipped` when neither the server's set of deleted images (kept fresh by NOTIFY) nor the database could say which results were deleted */
                    "X-Deleted-Filter"?: string;
                    /** @description with `skipped`: deletions older than this many seconds were still filtered out (from the server's last confirmed set) */
                    "X-Deleted-Filter-Age"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SimilarShotsResponse"];
                };
            };
            /** @description unknown event */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says which field and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description no index loaded yet, or the database did not answer whether the event exists, or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    extract_features_extract_features_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "multipart/form-data": components["schemas"]["Body_extract_features_extract_features_post"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["FeaturesResponse"];
                };
            };
            /** @description upload over MAX_UPLOAD_MB, or an image too large to decode (pixel or memory budget) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description the file is not an image */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says which field and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description no index loaded, the model unavailable, or every upload slot busy (UPLOAD_CONCURRENCY), or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    image_status_images__id_or_code__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description an image id (integer) or an image code (UUID) */
                id_or_code: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ImageStatusResponse"];
                };
            };
            /** @description unknown image */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says which field and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description the database is unavailable or did not answer in time, or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    similar_images__id_or_code__similar_get: {
        parameters: {
            query?: {
                /** @description only images of this event (UUID) */
                event_code?: string;
                min_score?: number;
                top_k?: number;
            };
            header?: never;
            path: {
                /** @description an image id (integer) or an image code (UUID) */
                id_or_code: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    /** @description `skipped` when neither the server's set of deleted images (kept fresh by NOTIFY) nor the database could say which results were deleted */
                    "X-Deleted-Filter"?: string;
                    /** @description with `skipped`: deletions older than this many seconds were still filtered out (from the server's last confirmed set) */
                    "X-Deleted-Filter-Age"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SearchHit"][];
                };
            };
            /** @description unknown image */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says which field and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description no index version loaded yet (the message says why), or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    metrics_metrics_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": unknown;
                };
            };
            /** @description never for a request itself, or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    search_vector_search_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SearchRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    /** @description `skipped` when neither the server's set of deleted images (kept fresh by NOTIFY) nor the database could say which results were deleted */
                    "X-Deleted-Filter"?: string;
                    /** @description with `skipped`: deletions older than this many seconds were still filtered out (from the server's last confirmed set) */
                    "X-Deleted-Filter-Age"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SearchHit"][];
                };
            };
            /** @description request body over MAX_UPLOAD_MB */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says which field and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description no index version loaded yet (the message says why), or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    search_image_search_image_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "multipart/form-data": components["schemas"]["Body_search_image_search_image_post"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    /** @description `skipped` when neither the server's set of deleted images (kept fresh by NOTIFY) nor the database could say which results were deleted */
                    "X-Deleted-Filter"?: string;
                    /** @description with `skipped`: deletions older than this many seconds were still filtered out (from the server's last confirmed set) */
                    "X-Deleted-Filter-Age"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["VerifiedHit"][];
                };
            };
            /** @description upload over MAX_UPLOAD_MB, or an image too large to decode (pixel or memory budget) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description the file is not an image */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says which field and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description no index loaded, the model unavailable, or every upload slot busy (UPLOAD_CONCURRENCY), or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    stats_stats_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["StatsResponse"];
                };
            };
            /** @description never for a request itself, or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    versions_versions_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["VersionsResponse"];
                };
            };
            /** @description never for a request itself, or the server is short of a resource (an OS error such as too many open files); Retry-After says when to retry */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    check_versions_versions_check_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["IntegrityState"];
                };
            };
            /** @description X-API-Key missing */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description wrong API key */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
}
