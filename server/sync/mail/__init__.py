"""Reading mail, with no I/O: parsing raw messages (MIME, headers, addresses), the
tracking rule chain and the correlation keys. Nothing here touches a database or a network
(as Flask's ``sansio``): each function takes bytes or values and returns values.
"""
